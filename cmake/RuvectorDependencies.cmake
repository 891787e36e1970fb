# Eigen >= 3.4 and xsimd >= 8.1: the system's copies when present (Debian: libeigen3-dev,
# libxsimd-dev), else a pinned download. The download is for the wheel builders only (GitHub
# runners without these packages); it cannot be exercised on machines that reach no code host.
include(FetchContent)

set(RUVECTOR_EIGEN_URL "https://gitlab.com/libeigen/eigen/-/archive/3.4.0/eigen-3.4.0.tar.gz")
set(RUVECTOR_EIGEN_SHA256 "8586084f71f9bde545ee7fa6d00288b264a2b7ac3607b974e54d13e7162c1c72")
set(RUVECTOR_XSIMD_URL "https://github.com/xtensor-stack/xsimd/archive/refs/tags/14.2.0.zip")
set(RUVECTOR_XSIMD_SHA256 "f06571e7f51618484cdeab0bf3ef0388eb18bf5a38f488024ca1d55f9881b9b5")

find_package(Eigen3 3.4 CONFIG QUIET)
if(NOT TARGET Eigen3::Eigen)
  message(STATUS "ruvector: Eigen3 not found on the system, fetching the pinned 3.4.0 archive")
  FetchContent_Declare(ruvector_eigen URL ${RUVECTOR_EIGEN_URL} URL_HASH SHA256=${RUVECTOR_EIGEN_SHA256})
  FetchContent_GetProperties(ruvector_eigen)
  if(NOT ruvector_eigen_POPULATED)
    FetchContent_Populate(ruvector_eigen)
  endif()
  add_library(Eigen3::Eigen INTERFACE IMPORTED)
  set_target_properties(Eigen3::Eigen PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${ruvector_eigen_SOURCE_DIR}")
  set(RUVECTOR_FETCHED_EIGEN_DIR "${ruvector_eigen_SOURCE_DIR}")
endif()

# Debian's xsimd 8.1 config links a target named "xtl" that it never defines
# ("cannot find -lxtl"): give it an empty one before anything links xsimd.
if(NOT TARGET xtl)
  add_library(xtl INTERFACE IMPORTED)
endif()
find_package(xsimd 8.1 CONFIG QUIET)
if(NOT TARGET xsimd)
  message(STATUS "ruvector: xsimd not found on the system, fetching the pinned 14.2.0 archive")
  FetchContent_Declare(ruvector_xsimd URL ${RUVECTOR_XSIMD_URL} URL_HASH SHA256=${RUVECTOR_XSIMD_SHA256})
  FetchContent_GetProperties(ruvector_xsimd)
  if(NOT ruvector_xsimd_POPULATED)
    FetchContent_Populate(ruvector_xsimd)
  endif()
  add_library(xsimd INTERFACE IMPORTED)
  set_target_properties(xsimd PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${ruvector_xsimd_SOURCE_DIR}/include")
  set(RUVECTOR_FETCHED_XSIMD_DIR "${ruvector_xsimd_SOURCE_DIR}/include")
endif()

find_package(Threads REQUIRED)
