# ASan + UBSan for the test build. Every binary, tests included, gets the
# same flags so a fault in a library call path is caught where it happens.
if(SPOOL_SANITIZE)
	set(_san -fsanitize=address,undefined -fno-sanitize-recover=all
		 -fno-omit-frame-pointer)
	add_compile_options(${_san} -g -O1)
	add_link_options(${_san})
endif()
