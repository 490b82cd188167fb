/**
 * The listen(2) backlog of a server that takes `connections` at once: how many connections
 * the kernel may hold, handshake done, before the server accepts them. A fleet that comes
 * back after an outage connects all at once. With Node's default of 511, Linux drops the
 * SYNs past it (tcp_conn_request, counted as ListenOverflows in /proc/net/netstat) and each
 * device so dropped waits out SYN retransmission (1, 3, 7, 15 s), while the server itself
 * may be idle. The kernel caps any backlog at net.core.somaxconn (4096 since Linux 5.4).
 */
export const NODE_DEFAULT_BACKLOG = 511;

export function acceptQueueFor(connections: number): number {
  return Math.max(NODE_DEFAULT_BACKLOG, Math.floor(connections));
}
