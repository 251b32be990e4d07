# libFuzzer builds (SPOOL_FUZZ=ON, clang only). Every object of the build is
# compiled with coverage and ASan+UBSan, so the parsers the fuzzers call
# are instrumented, not just the fuzz drivers; -fsanitize=fuzzer itself is
# added only where the fuzz targets link (tests/fuzz), since it supplies
# main(). With another compiler the option only warns and builds nothing
# more, so a gcc build stays exactly the normal one.
option(SPOOL_FUZZ "Build the libFuzzer targets in tests/fuzz (clang only)" OFF)
set(SPOOL_FUZZ_ENABLED OFF)
if(SPOOL_FUZZ)
	if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang")
		message(WARNING "SPOOL_FUZZ needs clang (CC=clang); "
			"${CMAKE_C_COMPILER_ID} has no libFuzzer: no fuzz targets")
	else()
		set(SPOOL_FUZZ_ENABLED ON)
		set(_fuzz_san -fsanitize=fuzzer-no-link,address,undefined
			      -fno-sanitize-recover=all -fno-omit-frame-pointer)
		add_compile_options(${_fuzz_san} -g -O1)
		add_link_options(${_fuzz_san})
	endif()
endif()
