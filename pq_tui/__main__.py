from pq_tui.cli import main

raise SystemExit(main())
