from hedgeway.cli import main

raise SystemExit(main())
