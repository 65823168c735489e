from longdoc.pipeline.cli import main

main()
