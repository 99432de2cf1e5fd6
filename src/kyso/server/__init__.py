"""`kyso serve`: the HTTP face of the library for backend services."""
