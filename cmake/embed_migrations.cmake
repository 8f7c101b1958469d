# Script mode: writes OUT, a C++ source holding every DIR/NNNN_name.sql as a Migration.
file(GLOB sql_files ${DIR}/*.sql)
list(SORT sql_files)
set(body "")
foreach(f ${sql_files})
  get_filename_component(name ${f} NAME_WE)
  if(NOT name MATCHES "^([0-9][0-9][0-9][0-9])_([a-z0-9_]+)$")
    message(FATAL_ERROR "migration ${f} is not named NNNN_name.sql")
  endif()
  set(version ${CMAKE_MATCH_1})
  math(EXPR version "${version}" OUTPUT_FORMAT DECIMAL)
  file(READ ${f} sql)
  string(APPEND body "      {${version}, \"${name}\", R\"dj_sql(${sql})dj_sql\"},\n")
endforeach()
file(WRITE ${OUT}.tmp "// Generated from ${DIR} by cmake/embed_migrations.cmake. Do not edit.
#include <vector>

#include \"common/sql/migrations.h\"

namespace ${NAMESPACE} {
const std::vector<dangjian::sql::Migration>& EmbeddedMigrations() {
  static const auto* const kMigrations = new std::vector<dangjian::sql::Migration>{
${body}  };
  return *kMigrations;
}
}  // namespace ${NAMESPACE}
")
file(COPY_FILE ${OUT}.tmp ${OUT} ONLY_IF_DIFFERENT)
