"""A stand-in for Kestra 1.3, for tests only (Kestra cannot be installed here).

It follows Kestra's documented OSS contract (../shared/reference/kestra.md) and reads the
repository's own flow file, so a drifting flow or client breaks the tests:

* `api`: the REST API under `/api/v1/main/...` behind basic auth (credentials Kestra would
  not store make every call 401), executions created from multipart form fields, found by
  search and GET only `visibility_delay_s` after the create (Kestra's create goes through a
  queue), the `/_standin/` fault switches and records; `KestraStandin` serves it in-process
  for tests/api, where tests move executions with `state.set_state()`.
* `__main__` (executor mode, tests/e2e): Kestra's command line and configuration file
  (tutorial flows must be switched off), the flow checked at start-up (`flow`, `pebble`:
  anything not emulated is refused), executions run with task containers on the Docker
  engine (`executor`), kept across restarts in the storage directory (`state`).

Not emulated (a flow using it is refused): anything flows/yolo-detect.yml does not use, e.g.
triggers, subflows, flowable tasks, `errors`/`finally`, concurrency limits, namespace files,
`inputFiles`/`outputFiles`, FILE and BOOLEAN inputs, inputs' `required`, Request `headers`,
BASIC auth and `allowFailed`, Pebble beyond `reference ?? literal`, retry types other than
constant and `maxDuration`. Not emulated either: the UI, QUEUED and the RETRYING execution
state, internal storage (`kestra://`), flow revisions and flow CRUD/validation endpoints,
the kill and logs endpoints, Postgres (executions live in a JSON file: a Postgres restart
does not touch the stand-in), worker/executor separation, image pull authentication,
pagination beyond `size`.
"""

from tests.support.kestra.api import KestraStandin
from tests.support.kestra.state import jobs_of

__all__ = ["KestraStandin", "jobs_of"]
