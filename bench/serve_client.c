/* serve_client.c - a load generator for OpenAI-compatible servers (a --server program,
 * llama-server): C concurrent streams over plain sockets, each sending streamed
 * /v1/completions requests one after another until R requests in all or S seconds have
 * passed, timing every server-sent event. Prints one line: streams, requests, generated
 * tokens per second over the wall time, and p50 / p99 of the time to first token and of
 * the inter-token latency (between two events that carry text).
 *
 * Usage: serve_client HOST PORT STREAMS REQUESTS SECONDS MAX_TOKENS [PROMPT]
 * Built by bench/serve_http.sh (cc -O2 -pthread); libc only. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

typedef struct {
	double *v;
	size_t n, cap;
	pthread_mutex_t mu;
} Samples;

static const char *host, *prompt;
static int port, max_tokens;
static double t_end;
static atomic_int left;           /* requests still to send */
static atomic_llong tokens, fails; /* generated tokens, failed requests */
static Samples ttft = {.mu = PTHREAD_MUTEX_INITIALIZER}, itl = {.mu = PTHREAD_MUTEX_INITIALIZER};

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void add(Samples *s, const double *v, size_t n)
{
	pthread_mutex_lock(&s->mu);
	if (s->n + n > s->cap) {
		s->cap = (s->n + n) * 2;
		s->v = realloc(s->v, s->cap * sizeof *s->v);
	}
	memcpy(s->v + s->n, v, n * sizeof *v);
	s->n += n;
	pthread_mutex_unlock(&s->mu);
}

static int connect_to(void)
{
	char ps[16];
	snprintf(ps, sizeof ps, "%d", port);
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
	if (getaddrinfo(host, ps, &hints, &ai))
		return -1;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen)) {
		close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	if (fd >= 0) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	return fd;
}

/* Whether the event's JSON carries non-empty text ("content":"x or "text":"x). */
static int has_text(const char *ev)
{
	const char *keys[] = {"\"content\":\"", "\"text\":\""};
	for (int i = 0; i < 2; i++) {
		const char *p = strstr(ev, keys[i]);
		if (p && p[strlen(keys[i])] != '"')
			return 1;
	}
	return 0;
}

/* One streamed request: its events timed; 0 or -1. */
static int one_request(double *ttft_out, double **gaps, size_t *n_gaps, long *n_tok)
{
	int fd = connect_to();
	if (fd < 0)
		return -1;
	char body[8192], req[9000];
	int bl = snprintf(body, sizeof body,
			  "{\"prompt\":\"%s\",\"max_tokens\":%d,\"temperature\":0,\"stream\":true,"
			  "\"stream_options\":{\"include_usage\":true},\"ignore_eos\":true,"
			  /* llama-server keeps each slot's prompt and would process 1 of its tokens
			   * from the second request on; every request here costs its whole prompt */
			  "\"cache_prompt\":false}",
			  prompt, max_tokens);
	int rl = snprintf(req, sizeof req,
			  "POST /v1/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: "
			  "application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s",
			  host, bl, body);
	double t0 = now(), last = 0;
	if (write(fd, req, (size_t)rl) != rl) {
		close(fd);
		return -1;
	}
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap);
	size_t scan = 0;
	long events = 0, usage = -1;
	int ok = 0;
	*n_gaps = 0;
	*ttft_out = -1;
	for (;;) {
		if (len + 4096 > cap)
			buf = realloc(buf, cap *= 2);
		ssize_t r = read(fd, buf + len, cap - len - 1);
		if (r <= 0)
			break;
		double t = now();
		len += (size_t)r;
		buf[len] = 0;
		/* every complete "data: ...\n" line since the last scan */
		for (;;) {
			char *d = strstr(buf + scan, "data: ");
			char *nl = d ? strchr(d, '\n') : NULL;
			if (!nl)
				break;
			*nl = 0;
			if (!strncmp(d + 6, "[DONE]", 6))
				ok = 1;
			else if (has_text(d)) {
				if (*ttft_out < 0)
					*ttft_out = t - t0;
				else if (*n_gaps < (size_t)max_tokens + 15)
					(*gaps)[(*n_gaps)++] = t - last;
				last = t;
				events++;
			}
			const char *u = strstr(d, "\"completion_tokens\":");
			if (u)
				usage = atol(u + 20);
			*nl = '\n';
			scan = (size_t)(nl + 1 - buf);
		}
	}
	free(buf);
	close(fd);
	*n_tok = usage >= 0 ? usage : events;
	return ok && *ttft_out >= 0 ? 0 : -1;
}

static void *stream(void *arg)
{
	(void)arg;
	double *gaps = malloc(sizeof *gaps * (size_t)(max_tokens + 16));
	while (atomic_fetch_sub(&left, 1) > 0 && now() < t_end) {
		double t;
		size_t ng;
		long nt;
		if (one_request(&t, &gaps, &ng, &nt)) {
			atomic_fetch_add(&fails, 1);
			continue;
		}
		add(&ttft, &t, 1);
		add(&itl, gaps, ng);
		atomic_fetch_add(&tokens, nt);
	}
	free(gaps);
	return NULL;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double pct(Samples *s, double p)
{
	if (!s->n)
		return 0;
	qsort(s->v, s->n, sizeof *s->v, cmp);
	size_t i = (size_t)(p * (double)(s->n - 1) + 0.5);
	return s->v[i];
}

int main(int argc, char **argv)
{
	if (argc < 7) {
		fprintf(stderr, "usage: %s HOST PORT STREAMS REQUESTS SECONDS MAX_TOKENS [PROMPT]\n",
			argv[0]);
		return 1;
	}
	host = argv[1];
	port = atoi(argv[2]);
	int n = atoi(argv[3]);
	int reqs = atoi(argv[4]);
	double secs = atof(argv[5]);
	max_tokens = atoi(argv[6]);
	prompt = argc > 7 ? argv[7] : "Once upon a time, in a land far away, there lived";
	if (n < 1 || n > 1024 || reqs < 1 || secs <= 0 || max_tokens < 1) {
		fprintf(stderr, "%s: bad arguments\n", argv[0]);
		return 1;
	}
	atomic_store(&left, reqs);
	double t0 = now();
	t_end = t0 + secs;
	pthread_t th[1024];
	for (int i = 0; i < n; i++)
		pthread_create(&th[i], NULL, stream, NULL);
	for (int i = 0; i < n; i++)
		pthread_join(th[i], NULL);
	double wall = now() - t0;
	printf("streams %3d  requests %4zu  failed %lld  wall %6.2f s  tokens %6lld  %8.1f tok/s  "
	       "ttft p50 %7.1f ms p99 %7.1f ms  itl p50 %6.2f ms p99 %6.2f ms\n",
	       n, ttft.n, (long long)atomic_load(&fails), wall, (long long)atomic_load(&tokens),
	       (double)atomic_load(&tokens) / wall, pct(&ttft, 0.5) * 1e3, pct(&ttft, 0.99) * 1e3,
	       pct(&itl, 0.5) * 1e3, pct(&itl, 0.99) * 1e3);
	return atomic_load(&fails) && !ttft.n ? 2 : 0;
}
