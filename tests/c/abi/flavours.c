/* The three flavours loaded at once (dlopen, RTLD_LOCAL) are separate library instances, as
 * upstream's are: a handle64 one opened is AEE_EINVHANDLE to another, and stays usable in its
 * own; then dlopen/dlclose cycles of all three. One line per check, "<name> <value>".
 * Usage: flavours CYCLES */
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "remote.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3"

struct lib {
	void *h;
	int (*open64)(const char *, remote_handle64 *);
	int (*invoke64)(remote_handle64, uint32_t, remote_arg *);
	int (*close64)(remote_handle64);
	int (*control64)(remote_handle64, uint32_t, void *, uint32_t);
};

static int load(struct lib *l, const char *name)
{
	l->h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
	if (!l->h) {
		fprintf(stderr, "dlopen %s: %s\n", name, dlerror());
		return -1;
	}
	*(void **)&l->open64 = dlsym(l->h, "remote_handle64_open");
	*(void **)&l->invoke64 = dlsym(l->h, "remote_handle64_invoke");
	*(void **)&l->close64 = dlsym(l->h, "remote_handle64_close");
	*(void **)&l->control64 = dlsym(l->h, "remote_handle64_control");
	return 0;
}

/* sum of {1, 2, 3} through @l on @h: 6, or -code */
static long sum(struct lib *l, remote_handle64 h)
{
	int32_t n = 3, v[3] = { 1, 2, 3 };
	int64_t out = -1;
	remote_arg pra[3];
	int rc;

	pra[0].buf.pv = &n;
	pra[0].buf.nLen = sizeof(n);
	pra[1].buf.pv = v;
	pra[1].buf.nLen = sizeof(v);
	pra[2].buf.pv = &out;
	pra[2].buf.nLen = sizeof(out);
	rc = l->invoke64(h, REMOTE_SCALARS_MAKE(2, 2, 1), pra);
	return rc ? -(long)(uint32_t)rc : (long)out;
}

static void line(const char *name, long v)
{
	printf("%s %ld\n", name, v);
}

int main(int argc, char **argv)
{
	struct lib a, c, s;
	struct remote_rpc_control_latency lat = { 1, 100 };
	remote_handle64 ha = 0, hc = 0;
	int cycles = argc > 1 ? atoi(argv[1]) : 5, k;

	if (load(&a, "libadsprpc.so.1") || load(&c, "libcdsprpc.so.1") || load(&s, "libsdsprpc.so.1"))
		return 1;
	line("adsprpc_open", a.open64(CALC "&_dom=cdsp", &ha));
	line("cdsprpc_open", c.open64(CALC "&_dom=cdsp", &hc));
	line("adsprpc_invoke_own", sum(&a, ha));
	line("cdsprpc_invoke_adsprpc_handle", sum(&c, ha));
	line("sdsprpc_invoke_adsprpc_handle", sum(&s, ha));
	line("adsprpc_invoke_cdsprpc_handle", sum(&a, hc));
	line("cdsprpc_control_adsprpc_handle",
	     (long)(uint32_t)c.control64(ha, DSPRPC_CONTROL_LATENCY, &lat, sizeof(lat)));
	line("cdsprpc_close_adsprpc_handle", (long)(uint32_t)c.close64(ha));
	line("adsprpc_invoke_own_after", sum(&a, ha));
	line("adsprpc_close_own", a.close64(ha));
	line("adsprpc_close_again", (long)(uint32_t)a.close64(ha));
	line("cdsprpc_invoke_own", sum(&c, hc));
	line("cdsprpc_close_own", c.close64(hc));
	for (k = 0; k < cycles; k++) {
		remote_handle64 h;

		dlclose(a.h);
		dlclose(c.h);
		dlclose(s.h);
		if (load(&a, "libadsprpc.so.1") || load(&c, "libcdsprpc.so.1") || load(&s, "libsdsprpc.so.1"))
			return 1;
		if (s.open64(CALC "&_dom=cdsp", &h) || sum(&s, h) != 6 || s.close64(h)) {
			line("cycle_failed", k);
			return 1;
		}
	}
	line("dlopen_cycles", cycles);
	puts("done");
	return 0;
}
