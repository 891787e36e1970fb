include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS ruvector EXPORT ruvectorTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(DIRECTORY "${PROJECT_SOURCE_DIR}/cpp/include/ruvector" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
install(EXPORT ruvectorTargets NAMESPACE ruvector:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ruvector)

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/ruvectorConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/ruvectorConfig.cmake"
  INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ruvector)
write_basic_package_version_file("${PROJECT_BINARY_DIR}/ruvectorConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY SameMajorVersion)
install(FILES "${PROJECT_BINARY_DIR}/ruvectorConfig.cmake" "${PROJECT_BINARY_DIR}/ruvectorConfigVersion.cmake"
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/ruvector)
