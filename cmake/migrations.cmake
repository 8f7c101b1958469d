# Embeds a service's migrations/NNNN_name.sql files into its binary, so a container needs no
# files beside the executable. dj_embed_migrations(<target> <namespace> <dir>) adds a generated
# source defining `const std::vector<dangjian::sql::Migration>& <namespace>::EmbeddedMigrations()`.
function(dj_embed_migrations target namespace dir)
  file(GLOB sql_files CONFIGURE_DEPENDS ${dir}/*.sql)
  list(SORT sql_files)
  set(out ${CMAKE_CURRENT_BINARY_DIR}/${target}_migrations.cc)
  add_custom_command(
    OUTPUT ${out}
    COMMAND ${CMAKE_COMMAND} -DOUT=${out} -DNAMESPACE=${namespace} -DDIR=${dir}
            -P ${CMAKE_SOURCE_DIR}/cmake/embed_migrations.cmake
    DEPENDS ${sql_files} ${CMAKE_SOURCE_DIR}/cmake/embed_migrations.cmake
    COMMENT "embedding migrations of ${target}"
    VERBATIM)
  target_sources(${target} PRIVATE ${out})
endfunction()
