/* A host that loads a plugin with dlopen(RTLD_LOCAL), as fastrpc_test loads its test
 * libraries; the plugin links libcdsprpc. Usage: local_host PLUGIN.so */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	void *h;
	int (*run)(void);

	if (argc < 2)
		return 2;
	h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		fprintf(stderr, "%s\n", dlerror());
		return 3;
	}
	*(void **)&run = dlsym(h, "plugin_run");
	if (!run)
		return 4;
	printf("plugin_run %d\n", run());
	dlclose(h);
	h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL); /* and again after dlclose */
	*(void **)&run = h ? dlsym(h, "plugin_run") : NULL;
	printf("plugin_run again %d\n", run ? run() : -1);
	return 0;
}
