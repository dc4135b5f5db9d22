# CPACK_POST_BUILD_SCRIPTS hook: repairs the prom-dbgsym .ddeb that CPackDeb (CMake 3.25)
# writes. Its md5sums lists the absolute paths of the build tree instead of package paths, and
# it has no /usr/share/doc entry. Debian's own -dbgsym packages point /usr/share/doc/PKG-dbgsym
# at the documentation of the package they depend on (Policy 12.5), which is done here too.
foreach(pkg IN LISTS CPACK_PACKAGE_FILES)
  if(NOT pkg MATCHES "-dbgsym_.*\\.ddeb$")
    continue()
  endif()
  set(tree "${CPACK_TOPLEVEL_DIRECTORY}/dbgsym-fix")
  file(REMOVE_RECURSE "${tree}")
  execute_process(COMMAND dpkg-deb -R "${pkg}" "${tree}" COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND sh -c "cd '${tree}' && find usr -type f | LC_ALL=C sort | xargs md5sum > DEBIAN/md5sums"
                  COMMAND_ERROR_IS_FATAL ANY)
  execute_process(COMMAND dpkg-deb -f "${pkg}" Package OUTPUT_VARIABLE name OUTPUT_STRIP_TRAILING_WHITESPACE
                  COMMAND_ERROR_IS_FATAL ANY)
  string(REGEX REPLACE "-dbgsym$" "" parent "${name}")
  file(MAKE_DIRECTORY "${tree}/usr/share/doc")
  file(CREATE_LINK "${parent}" "${tree}/usr/share/doc/${name}" SYMBOLIC)
  execute_process(COMMAND dpkg-deb --root-owner-group -Zxz -b "${tree}" "${pkg}" OUTPUT_QUIET COMMAND_ERROR_IS_FATAL ANY)
  file(REMOVE_RECURSE "${tree}")
endforeach()
