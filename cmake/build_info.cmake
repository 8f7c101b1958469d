# The build's version and revision for dj_build_info (common/build_info.h).
# dj_build_info_source(<target>) adds to <target> a source that cmake/write_build_info.cmake
# regenerates at every build. The script rewrites the file only when its text changes, and Ninja
# re-checks a byproduct's time stamp after the step (restat), so a new commit recompiles this one
# small file and relinks, and a build with nothing new recompiles nothing.
set(DJ_VERSION "0.1.0" CACHE STRING "Version reported by dj_build_info")
set(DJ_REVISION "" CACHE STRING
  "Revision reported by dj_build_info; empty: git's short commit id of the source tree at build \
time, or 'unknown' where there is no git checkout (a source tarball)")
find_package(Git QUIET)

function(dj_build_info_source target)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${target}_build_info.cc)
  set(git "${GIT_EXECUTABLE}")
  if(NOT git)
    set(git "")
  endif()
  add_custom_target(${target}_build_info
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DSOURCE_DIR=${CMAKE_SOURCE_DIR} -DGIT=${git}
            -DVERSION=${DJ_VERSION} -DREVISION=${DJ_REVISION}
            -P ${CMAKE_SOURCE_DIR}/cmake/write_build_info.cmake
    BYPRODUCTS ${out}
    VERBATIM)
  target_sources(${target} PRIVATE ${out})
  add_dependencies(${target} ${target}_build_info)
endfunction()
