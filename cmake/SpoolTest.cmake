# spool_add_unit_test(NAME SOURCES src... LIBS lib...)
# One cmocka executable per module, registered with ctest under unit/.
function(spool_add_unit_test name)
	cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
	add_executable(${name} ${T_SOURCES})
	target_link_libraries(${name} PRIVATE PkgConfig::CMOCKA ${T_LIBS})
	add_test(NAME unit/${name} COMMAND ${name})
	# Unit tests never read the host's /etc/spoold: the path used when
	# no file is named points into the build tree, where none exists.
	set_tests_properties(unit/${name} PROPERTIES TIMEOUT 300
		ENVIRONMENT
		"SPOOLD_TEST_DEFAULT_CONFIG=${CMAKE_BINARY_DIR}/no-such-spoold.conf")
endfunction()
