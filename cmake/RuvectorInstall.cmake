# `cmake --install <build> --prefix <prefix>` lays out the C++ library for find_package:
#   <prefix>/lib/libruvector.a                       the static library (all per-ISA kernels inside)
#   <prefix>/include/ruvector/*.hpp                  the public headers
#   <prefix>/lib/cmake/ruvector/ruvectorConfig.cmake (+ Version, Targets): target ruvector::ruvector
# Everything is in the "ruvector_development" component. The Python wheel does not install this
# (RUVECTOR_INSTALL=OFF in pyproject.toml).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

set(RUVECTOR_CMAKE_INSTALL_DIR "${CMAKE_INSTALL_LIBDIR}/cmake/ruvector"
    CACHE STRING "Where ruvectorConfig.cmake is installed, relative to the prefix")

# The exported link interface names Eigen3::Eigen and Threads::Threads only: xsimd is linked
# PRIVATE through $<BUILD_INTERFACE:...> in cpp/CMakeLists.txt, so it is not recorded there
# (it leaves an empty, harmless "$<LINK_ONLY:>"). The include directory comes from the
# target's own $<INSTALL_INTERFACE:include>.
install(TARGETS ruvector EXPORT ruvectorTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR} COMPONENT ruvector_development)
install(DIRECTORY "${PROJECT_SOURCE_DIR}/cpp/include/ruvector" DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
        COMPONENT ruvector_development FILES_MATCHING PATTERN "*.hpp")
install(EXPORT ruvectorTargets NAMESPACE ruvector:: DESTINATION ${RUVECTOR_CMAKE_INSTALL_DIR}
        COMPONENT ruvector_development)

# Informational, for ruvector_SIMD_BACKENDS in the config: "scalar;avx2;avx512" from the
# RUVECTOR_HAVE_<ISA>=1 definitions of cmake/RuvectorKernels.cmake.
set(RUVECTOR_INSTALLED_BACKENDS "")
foreach(def IN LISTS RUVECTOR_ISA_DEFINITIONS)
  if(def MATCHES "^RUVECTOR_HAVE_([A-Z0-9]+)=1$")
    string(TOLOWER "${CMAKE_MATCH_1}" isa)
    list(APPEND RUVECTOR_INSTALLED_BACKENDS "${isa}")
  endif()
endforeach()

configure_package_config_file("${PROJECT_SOURCE_DIR}/cmake/ruvectorConfig.cmake.in"
  "${PROJECT_BINARY_DIR}/ruvectorConfig.cmake"
  INSTALL_DESTINATION ${RUVECTOR_CMAKE_INSTALL_DIR})
# Before 1.0 a minor release may change the API, so 0.x versions match on major.minor.
if(PROJECT_VERSION_MAJOR EQUAL 0)
  set(_rv_compat SameMinorVersion)
else()
  set(_rv_compat SameMajorVersion)
endif()
write_basic_package_version_file("${PROJECT_BINARY_DIR}/ruvectorConfigVersion.cmake"
  VERSION ${PROJECT_VERSION} COMPATIBILITY ${_rv_compat})
install(FILES "${PROJECT_BINARY_DIR}/ruvectorConfig.cmake" "${PROJECT_BINARY_DIR}/ruvectorConfigVersion.cmake"
        DESTINATION ${RUVECTOR_CMAKE_INSTALL_DIR} COMPONENT ruvector_development)
