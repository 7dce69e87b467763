"""Probes run inside a pod's network namespace (ip netns exec NS python3 probe.py ...).

  probe.py matrix IP:PORT/PROTO...   one connection attempt per target, all at once;
                                     prints one line of 1 (answered) and 0 per target
  probe.py stream IP PORT SECONDS    one TCP connection, a line echoed every 100 ms for
                                     SECONDS; prints "sent N echoed M" and exits 1 unless
                                     every line came back (the connection was never cut)
"""
import socket
import sys
import threading
import time

TIMEOUT = 1.5


def tcp(ip, port):
    try:
        with socket.create_connection((ip, port), timeout=TIMEOUT):
            return True
    except OSError:
        return False


def udp(ip, port):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(TIMEOUT / 2)
        for _ in range(2):
            try:
                s.sendto(b"probe", (ip, port))
                if s.recv(64) == b"probe":
                    return True
            except OSError:
                pass
    return False


def matrix(targets):
    results = [False] * len(targets)

    def one(i, target):
        addr, proto = target.split("/")
        ip, port = addr.rsplit(":", 1)
        results[i] = (tcp if proto == "tcp" else udp)(ip, int(port))

    threads = [threading.Thread(target=one, args=(i, t)) for i, t in enumerate(targets)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    print("".join("1" if r else "0" for r in results))


def stream(ip, port, seconds):
    sent = echoed = 0
    deadline = time.monotonic() + seconds
    try:
        with socket.create_connection((ip, port), timeout=TIMEOUT) as s:
            s.settimeout(2)
            while time.monotonic() < deadline:
                line = b"line %d\n" % sent
                s.sendall(line)
                sent += 1
                got = b""
                while len(got) < len(line):
                    chunk = s.recv(len(line) - len(got))
                    if not chunk:
                        raise OSError("closed")
                    got += chunk
                echoed += 1
                time.sleep(0.1)
    except OSError as e:
        print("sent %d echoed %d: %s" % (sent, echoed, e))
        sys.exit(1)
    print("sent %d echoed %d" % (sent, echoed))
    sys.exit(0 if sent == echoed and sent > 0 else 1)


if __name__ == "__main__":
    if sys.argv[1] == "matrix":
        matrix(sys.argv[2:])
    elif sys.argv[1] == "stream":
        stream(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
    else:
        sys.exit("probe.py: unknown mode %s" % sys.argv[1])
