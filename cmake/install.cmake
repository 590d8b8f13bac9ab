# Installs the library, its headers and a CMake package so that another project can
#   find_package(loom) and target_link_libraries(app PRIVATE loom::loom).
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)
set(LOOM_INTERNAL_TARGETS loom_blas)
if(LOOM_WITH_CUDA)
  list(APPEND LOOM_INTERNAL_TARGETS loom_cudnn loom_nccl loom_device_launch)
endif()
install(TARGETS loom ${LOOM_INTERNAL_TARGETS} EXPORT loomTargets
        ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
        RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
foreach(dir core kernels modules optim train)
  install(DIRECTORY ${PROJECT_SOURCE_DIR}/${dir} DESTINATION include/loom
          FILES_MATCHING PATTERN "*.h")
endforeach()
install(EXPORT loomTargets NAMESPACE loom:: DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/loom)
configure_package_config_file(${PROJECT_SOURCE_DIR}/cmake/loomConfig.cmake.in
  ${PROJECT_BINARY_DIR}/loomConfig.cmake INSTALL_DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/loom)
write_basic_package_version_file(${PROJECT_BINARY_DIR}/loomConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/loomConfig.cmake ${PROJECT_BINARY_DIR}/loomConfigVersion.cmake
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/loom)
