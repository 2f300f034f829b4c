from ratedial.virtual.command import main

main()
