/* placeholder: replaced by the real source */
typedef int qdarpc_placeholder_errmap;
