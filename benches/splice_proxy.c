// The splice(2) experiment of issue 14, kept so it can be run again; not
// part of the library. A one-thread epoll L4 proxy in two modes: copying
// through a 64 KiB user buffer per direction (read/write, what evloop's
// proxy does), or splice(2) through a pipe per direction (HAProxy's and
// sozu's zero-copy path). The mode is chosen by the binary's directory,
// so compare.py can run both as "ours" and "ours-b":
//
//   mkdir -p /tmp/sp/rw /tmp/sp/splice
//   gcc -O2 -o /tmp/sp/rw/proxy benches/splice_proxy.c
//   cp /tmp/sp/rw/proxy /tmp/sp/splice/proxy
//   OURS_DIR=/tmp/sp/rw python3 ../shared/peers/compare.py proxy-bulk
//       --rounds 5 --ours-b /tmp/sp/splice --only haproxy-1thread
//   (one command line)
//
// The figures and the decision are in docs/BENCHMARKS.md ("splice(2):
// tried, not kept"). Errors are not handled beyond what a benchmark run
// needs: a throwaway measuring tool, not a server.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>
#define BUF_CAP 65536     // read/write: evloop's scratch buffer size
#define PIPE_CAP (1 << 20) // splice: 64 KiB pipes measured worse (see BENCHMARKS)
struct dir { int src, dst; int p[2]; char *buf; size_t len, off; int eof; };
struct pair { int fd[2]; struct dir d[2]; };
static int use_splice;
static struct pair *by_fd[65536];
static void parse(const char *s, struct sockaddr_in *a) {
  char h[64]; const char *c = strrchr(s, ':'); memcpy(h, s, c - s); h[c - s] = 0;
  a->sin_family = AF_INET; a->sin_port = htons(atoi(c + 1)); inet_pton(AF_INET, h, &a->sin_addr);
}
static void pump(struct dir *d) {
  for (;;) {
    while (d->len) {
      ssize_t n = use_splice ? splice(d->p[0], 0, d->dst, 0, d->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                             : write(d->dst, d->buf + d->off, d->len);
      if (n < 0) return; // EAGAIN or error: wait
      d->len -= n; d->off += n;
    }
    d->off = 0;
    if (d->eof) return;
    ssize_t n = use_splice ? splice(d->src, 0, d->p[1], 0, PIPE_CAP, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                           : read(d->src, d->buf, BUF_CAP);
    if (n == 0) { d->eof = 1; shutdown(d->dst, SHUT_WR); return; }
    if (n < 0) return;
    d->len = n;
  }
}
int main(int argc, char **argv) {
  use_splice = getenv("SPLICE") != NULL || strstr(argv[0], "splice") != NULL;
  struct sockaddr_in la = {0}, ba = {0};
  for (int i = 1; i < argc - 1; i++) {
    if (!strcmp(argv[i], "--addr")) parse(argv[i + 1], &la);
    if (!strcmp(argv[i], "--backend")) parse(argv[i + 1], &ba);
  }
  int l = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
  setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(l, (void *)&la, sizeof la) || listen(l, 1024)) { perror("listen"); return 1; }
  fprintf(stderr, "listening (%s)\n", use_splice ? "splice" : "read/write");
  int ep = epoll_create1(0);
  struct epoll_event ev = {.events = EPOLLIN, .data.fd = l}, evs[256];
  epoll_ctl(ep, EPOLL_CTL_ADD, l, &ev);
  for (;;) {
    int n = epoll_wait(ep, evs, 256, -1);
    for (int i = 0; i < n; i++) {
      int fd = evs[i].data.fd;
      if (fd == l) {
        int c;
        while ((c = accept4(l, 0, 0, SOCK_NONBLOCK)) >= 0) {
          int b = socket(AF_INET, SOCK_STREAM, 0);
          if (connect(b, (void *)&ba, sizeof ba)) { close(c); close(b); continue; }
          fcntl(b, F_SETFL, O_NONBLOCK);
          setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          setsockopt(b, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          struct pair *p = calloc(1, sizeof *p);
          p->fd[0] = c; p->fd[1] = b;
          for (int k = 0; k < 2; k++) {
            p->d[k].src = p->fd[k]; p->d[k].dst = p->fd[1 - k];
            if (use_splice) { pipe2(p->d[k].p, O_NONBLOCK | O_CLOEXEC); fcntl(p->d[k].p[1], F_SETPIPE_SZ, PIPE_CAP); } else p->d[k].buf = malloc(BUF_CAP);
          }
          by_fd[c] = by_fd[b] = p;
          for (int k = 0; k < 2; k++) {
            struct epoll_event e = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.fd = p->fd[k]};
            epoll_ctl(ep, EPOLL_CTL_ADD, p->fd[k], &e);
          }
        }
        continue;
      }
      struct pair *p = by_fd[fd];
      if (!p) continue;
      pump(&p->d[0]); pump(&p->d[1]);
      if ((evs[i].events & (EPOLLERR | EPOLLHUP)) || (p->d[0].eof && p->d[1].eof && !p->d[0].len && !p->d[1].len)) {
        for (int k = 0; k < 2; k++) {
          by_fd[p->fd[k]] = 0; close(p->fd[k]);
          if (use_splice) { close(p->d[k].p[0]); close(p->d[k].p[1]); } else free(p->d[k].buf);
        }
        free(p);
      }
    }
  }
}
