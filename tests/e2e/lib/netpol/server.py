"""The servers of a netpol test pod (the upstream suite's agnhost serve-hostname):
one listener per PORT/PROTO argument, e.g. `server.py 80/tcp 81/udp`.
TCP echoes lines until the client closes; UDP echoes each datagram."""
import socket
import sys
import threading


def serve_tcp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(128)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=echo_lines, args=(conn,), daemon=True).start()


def echo_lines(conn):
    with conn:
        conn.settimeout(300)
        try:
            while True:
                data = conn.recv(4096)
                if not data:
                    return
                conn.sendall(data)
        except OSError:
            return


def serve_udp(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", port))
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def main():
    threads = []
    for arg in sys.argv[1:]:
        port, proto = arg.split("/")
        target = serve_tcp if proto == "tcp" else serve_udp
        t = threading.Thread(target=target, args=(int(port),), daemon=True)
        t.start()
        threads.append(t)
    for t in threads:
        t.join()


if __name__ == "__main__":
    main()
