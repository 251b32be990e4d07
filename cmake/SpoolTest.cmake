# spool_add_unit_test(NAME SOURCES src... LIBS lib...)
# One cmocka executable per module, registered with ctest under unit/.
function(spool_add_unit_test name)
	cmake_parse_arguments(T "" "" "SOURCES;LIBS" ${ARGN})
	add_executable(${name} ${T_SOURCES})
	target_link_libraries(${name} PRIVATE PkgConfig::CMOCKA ${T_LIBS})
	add_test(NAME unit/${name} COMMAND ${name})
	set_tests_properties(unit/${name} PROPERTIES TIMEOUT 300)
endfunction()
