/* fork() around the library's first call, made by another thread (which starts the interpreter):
 *   fork_start after   the first caller has exited, the main thread forks: the child works
 *   fork_start during  the main thread forks while the first call is (very likely) under way:
 *                      the child works, or has no emulator (AEE_ECONNREFUSED, said once on
 *                      stderr) - it never hangs or aborts
 * Prints "child <exit status or signal> <what the child saw>". */
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "remote.h"
#include "rpcmem.h"

#define CALC "file:///libcalculator_skel.so?calculator_skel_handle_invoke&_modver=1.0&_idlver=1.2.3" CDSP_DOMAIN

static void *first_call(void *arg)
{
	(void)arg;
	rpcmem_to_fd((void *)8);
	return NULL;
}

/* the child's view: "ok" (a handle opened and closed), else the open's code */
static int child(void)
{
	remote_handle64 h = 0;
	int rc;

	alarm(20); /* a hang is a failure the test sees, not a stuck test */
	rc = remote_handle64_open(CALC, &h);
	if (rc == 0)
		rc = remote_handle64_close(h);
	printf("%s 0x%x\n", rc ? "code" : "ok", (unsigned)rc);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	int during = argc > 1 && strcmp(argv[1], "during") == 0, st;
	pthread_t t;
	pid_t pid;

	pthread_create(&t, NULL, first_call, NULL);
	if (!during)
		pthread_join(t, NULL);
	else
		usleep(2000);
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(child());
	waitpid(pid, &st, 0);
	if (during)
		pthread_join(t, NULL);
	if (WIFSIGNALED(st))
		printf("child signal %d\n", WTERMSIG(st));
	else
		printf("child exit %d\n", WEXITSTATUS(st));
	return 0;
}
