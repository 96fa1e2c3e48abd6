from yolo_cli.cli import main

raise SystemExit(main())
