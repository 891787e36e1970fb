# One kernel source per ISA (cpp/src/simd/kernels_<isa>.cpp, all built from the headers that
# cpp/src/simd/isa_table.hpp gathers), each translation unit with its own flags. Nothing else in the project gets -m flags, so the library runs on any CPU
# of its architecture and picks the best kernel set at run time (cpp/src/simd_dispatch.cpp).

set(RUVECTOR_ISA_SOURCES "")
set(RUVECTOR_ISA_DEFINITIONS "")

if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64|x64|i[3-6]86)$")
  set(RUVECTOR_ARCH_X86 ON)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(RUVECTOR_ARCH_ARM64 ON)
endif()

# ruvector_add_isa_kernel(<name> <flags...>): adds cpp/src/simd/kernels_<name>.cpp with flags.
function(ruvector_add_isa_kernel name)
  set(src "${PROJECT_SOURCE_DIR}/cpp/src/simd/kernels_${name}.cpp")
  set(flags ${ARGN})
  if(flags)
    set_source_files_properties("${src}" PROPERTIES COMPILE_OPTIONS "${flags}")
  endif()
  set(RUVECTOR_ISA_SOURCES ${RUVECTOR_ISA_SOURCES} "${src}" PARENT_SCOPE)
  string(TOUPPER "${name}" upper)
  set(RUVECTOR_ISA_DEFINITIONS ${RUVECTOR_ISA_DEFINITIONS} "RUVECTOR_HAVE_${upper}=1" PARENT_SCOPE)
endfunction()

ruvector_add_isa_kernel(scalar)
if(RUVECTOR_ARCH_X86)
  if(MSVC)
    ruvector_add_isa_kernel(avx2 /arch:AVX2)
    ruvector_add_isa_kernel(avx512 /arch:AVX512)
  else()
    ruvector_add_isa_kernel(avx2 -mavx2 -mfma)
    # GCC 12 warns falsely (-Wmaybe-uninitialized, -Wuninitialized) inside its own AVX-512 headers
    # (_mm512_undefined_ps initialises a register from itself); the avx2 and scalar units compile
    # the same kernel code with both warnings on.
    set(avx512_flags -mavx512f -mavx512bw -mavx512dq -mavx512vl -mavx2 -mfma -Wno-maybe-uninitialized
        -Wno-uninitialized)
    # AMX tiles (used by the avx512 kernels only after a run-time check, simd_dispatch.cpp).
    include(CheckCXXCompilerFlag)
    check_cxx_compiler_flag("-mamx-tile -mamx-bf16 -mavx512bf16" RUVECTOR_COMPILER_HAS_AMX)
    if(RUVECTOR_COMPILER_HAS_AMX)
      list(APPEND avx512_flags -mamx-tile -mamx-bf16 -mavx512bf16 -DRUVECTOR_AMX=1)
      set(RUVECTOR_ISA_DEFINITIONS ${RUVECTOR_ISA_DEFINITIONS} "RUVECTOR_AMX_BUILT=1")
    endif()
    ruvector_add_isa_kernel(avx512 ${avx512_flags})
  endif()
elseif(RUVECTOR_ARCH_ARM64)
  ruvector_add_isa_kernel(neon)
endif()
