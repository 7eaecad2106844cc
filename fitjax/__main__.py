from fitjax.cli import main

raise SystemExit(main())
