from ratedial.entry import main

main()
