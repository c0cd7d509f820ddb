from ig_evidence.witness.app import main

main()
