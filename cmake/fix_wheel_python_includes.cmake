# Mends the ROS 2 wheels from PyPI for building interface packages against them.
#
# The wheels' exported `<pkg>__rosidl_generator_py` targets carry the include directories of the
# manylinux interpreter that built them (/opt/python/...), which does not exist on a user's machine, so
# CMake's generate step stops with "includes non-existent path". Loaded into a stock CMakeLists with
# -DCMAKE_PROJECT_INCLUDE=<this file>, it waits until the top-level directory has been processed (all
# find_package calls done), then points those targets at this interpreter's Python and NumPy headers.
# On a regular ROS 2 install nothing matches and nothing changes.

if(NOT COMMAND openhelix_fix_wheel_python_includes)
  function(openhelix_fix_wheel_python_includes)
    get_property(imported DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
    set(broken)
    foreach(target IN LISTS imported)
      get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
      if(dirs AND "${dirs}" MATCHES "/opt/python/")
        list(APPEND broken ${target})
      endif()
    endforeach()
    if(NOT broken)
      return()
    endif()
    find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
    foreach(target IN LISTS broken)
      get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
      set(mended)
      foreach(dir IN LISTS dirs)
        if(dir MATCHES "^/opt/python/.*numpy")
          list(APPEND mended ${Python3_NumPy_INCLUDE_DIRS})
        elseif(dir MATCHES "^/opt/python/")
          list(APPEND mended ${Python3_INCLUDE_DIRS})
        else()
          list(APPEND mended "${dir}")
        endif()
      endforeach()
      list(REMOVE_DUPLICATES mended)
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${mended}")
    endforeach()
    list(LENGTH broken count)
    message(STATUS "openhelix: pointed ${count} wheel targets at this interpreter's Python/NumPy headers")
  endfunction()
  cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL openhelix_fix_wheel_python_includes)
endif()
