/* Device fds closed, replaced (dup2) and reopened by one thread while others ioctl and dup them:
 * every ioctl answers as the kernel would for an fd that is open, closed or reused (success,
 * EBADF, ENOTTY), nothing crashes, and every emulated file is released by the end. Prints
 * "unexpected N". Usage: threads THREADS ROUNDS */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define GET_DSP_INFO 0xc01c520d

static volatile int fd = -1, stop;
static int unexpected;

static void *user(void *arg)
{
	(void)arg;
	while (!stop) {
		struct { uint32_t domain, attr, cap, reserved[4]; } i = { 3, 0, 0, { 0 } };
		int f = fd, d, r = ioctl(f, GET_DSP_INFO, &i);

		if (r && errno != EBADF && errno != ENOTTY)
			__sync_fetch_and_add(&unexpected, 1);
		d = dup(f);
		if (d >= 0)
			close(d);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4, rounds = argc > 2 ? atoi(argv[2]) : 100, i;
	pthread_t *t = calloc((size_t)n, sizeof(*t));

	fd = open("/dev/fastrpc-cdsp", O_RDWR);
	for (i = 0; i < n; i++)
		pthread_create(&t[i], NULL, user, NULL);
	for (i = 0; i < rounds; i++) {
		const char *node = i % 2 ? "/dev/fastrpc-cdsp" : "/dev/fastrpc-adsp";
		int new = open(node, O_RDWR), old = fd, tries = 0;

		/* Each legacy file takes a context bank at open (adsp has 3); files whose last fd is
		 * gone are released only after their in-flight ioctls, so a bank can be briefly
		 * busy: EBUSY, as on the kernel. Wait for it rather than skip the round. */
		while (new < 0 && errno == EBUSY && ++tries < 100000) {
			sched_yield();
			new = open(node, O_RDWR);
		}
		if (new < 0) {
			__sync_fetch_and_add(&unexpected, 1);
			continue;
		}

		if (i % 3 == 0) { /* replace in place */
			dup2(new, old);
			close(new);
		} else {
			fd = new;
			close(old);
		}
	}
	stop = 1;
	for (i = 0; i < n; i++)
		pthread_join(t[i], NULL);
	close(fd);
	free(t);
	printf("unexpected %d\n", unexpected);
	return unexpected != 0;
}
