# The Vulkan backend: host code in src/vulkan/, GLSL compute shaders in kernels/vulkan/
# compiled to SPIR-V by glslc at build time and embedded into the library as word arrays
# (cmake/embed_spirv.cmake), so the library needs no shader files at run time.
if(NOT Vulkan_FOUND OR NOT GLSLC_EXECUTABLE)
  message(FATAL_ERROR "KILN_VULKAN=ON needs the Vulkan headers and loader (libvulkan-dev) and glslc; "
                      "install them (tools/install_deps.sh) or configure with -DKILN_VULKAN=OFF")
endif()

set(KILN_VK_DIR ${CMAKE_CURRENT_SOURCE_DIR}/kernels/vulkan)
set(KILN_SPV_DIR ${CMAKE_CURRENT_BINARY_DIR}/spirv)
file(MAKE_DIRECTORY ${KILN_SPV_DIR})
file(GLOB KILN_VK_INCLUDES CONFIGURE_DEPENDS ${KILN_VK_DIR}/*.glsl)

# Weight formats the dequantizing shaders are compiled for (one SPIR-V module per format,
# -DWTYPE_<FORMAT>; kernels/vulkan/dequant.glsl).
set(KILN_VK_WEIGHT_TYPES f32 f16 bf16 q4_0 q4_1 q5_0 q5_1 q8_0 q2_K q3_K q4_K q5_K q6_K iq4_nl iq4_xs
    iq2_xxs iq2_xs iq2_s iq3_xxs iq3_s iq1_s iq1_m)
# Shaders compiled once per weight format; every other .comp is compiled once.
set(KILN_VK_PER_WEIGHT_TYPE matvec get_rows matmul moe_matvec)
# KV cache formats (kernels/vulkan/kv.glsl, -DKV_<FORMAT>) and the shaders compiled per format.
set(KILN_VK_KV_TYPES f16 q8_0)
set(KILN_VK_PER_KV_TYPE kv_store flash_attn)

set(KILN_SPV_FILES "")
function(kiln_compile_shader src name defines)
  set(out ${KILN_SPV_DIR}/${name}.spv)
  add_custom_command(OUTPUT ${out}
    COMMAND ${GLSLC_EXECUTABLE} --target-env=vulkan1.2 -O -Werror ${defines} -o ${out} ${src}
    DEPENDS ${src} ${KILN_VK_INCLUDES}
    COMMENT "glslc ${name}" VERBATIM)
  set(KILN_SPV_FILES ${KILN_SPV_FILES} ${out} PARENT_SCOPE)
endfunction()

file(GLOB KILN_VK_SHADERS CONFIGURE_DEPENDS ${KILN_VK_DIR}/*.comp)
foreach(src ${KILN_VK_SHADERS})
  get_filename_component(stem ${src} NAME_WE)
  if(stem IN_LIST KILN_VK_PER_WEIGHT_TYPE)
    foreach(t ${KILN_VK_WEIGHT_TYPES})
      string(TOUPPER ${t} T)
      kiln_compile_shader(${src} ${stem}_${t} "-DWTYPE_${T}")
    endforeach()
  elseif(stem IN_LIST KILN_VK_PER_KV_TYPE)
    foreach(t ${KILN_VK_KV_TYPES})
      string(TOUPPER ${t} T)
      kiln_compile_shader(${src} ${stem}_${t} "-DKV_${T}")
    endforeach()
  else()
    kiln_compile_shader(${src} ${stem} "")
  endif()
endforeach()

set(KILN_SHADERS_CPP ${CMAKE_CURRENT_BINARY_DIR}/kiln_vulkan_shaders.cpp)
add_custom_command(OUTPUT ${KILN_SHADERS_CPP}
  COMMAND ${CMAKE_COMMAND} "-DOUT=${KILN_SHADERS_CPP}" "-DSPV_FILES=${KILN_SPV_FILES}" -P ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_spirv.cmake
  DEPENDS ${KILN_SPV_FILES} ${CMAKE_CURRENT_SOURCE_DIR}/cmake/embed_spirv.cmake
  COMMENT "Embedding SPIR-V" VERBATIM)

file(GLOB KILN_VK_SOURCES CONFIGURE_DEPENDS src/vulkan/*.cpp)
target_sources(kiln PRIVATE ${KILN_VK_SOURCES} ${KILN_SHADERS_CPP})
target_compile_definitions(kiln PRIVATE KILN_HAVE_VULKAN=1)
target_link_libraries(kiln PRIVATE Vulkan::Vulkan)

# Consumers of the installed static library link the Vulkan loader too.
set(KILN_CONFIG_VULKAN "find_dependency(Vulkan)\n")
set(KILN_PC_VULKAN "-lvulkan ")
