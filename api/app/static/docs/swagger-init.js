// Starts Swagger UI on /docs. A file rather than inline code, so the page's CSP allows only
// this origin's scripts.
"use strict";
const root = document.getElementById("swagger-ui");
window.ui = SwaggerUIBundle({
  url: root.dataset.specUrl,
  domNode: root,
  layout: "BaseLayout",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  // The default sends the spec's URL to validator.swagger.io for a badge: no third party.
  validatorUrl: null,
});
