from cl_analyze.cli import main

main()
