"""The test broker starts even when a port it chose is taken before it
listens (another test's broker chose the same port in the same instant).

The first pair of ports start() gets is one this test holds open: the node
must fail to listen with eaddrinuse, and start() must try again on other
ports and come up there. Needs rabbitmq-server, not a running broker.
"""
import os
import socket
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import broker  # noqa: E402


def main():
    held = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    taken = held.getsockname()[1]
    real_free_ports = broker._free_ports
    handed = []

    def free_ports_first_taken(count, taken_ports=()):
        ports = real_free_ports(count, taken_ports)
        if not handed:
            ports[0] = taken
        handed.append(list(ports))
        return ports

    broker._free_ports = free_ports_first_taken
    with tempfile.TemporaryDirectory(prefix="coport-rabbit-ports-") as d:
        b = broker.Broker(d)
        try:
            b.start()
            ok = True
            if len(handed) != 2:
                print("FAIL: expected 2 starts (one refused, one on new ports), got %d: %s"
                      % (len(handed), handed))
                ok = False
            if b.port == taken:
                print("FAIL: the broker claims the held port %d" % taken)
                ok = False
            with socket.create_connection(("127.0.0.1", b.port), timeout=5):
                pass
            print("ok: port %d was taken; the broker came up on %d after %d starts"
                  % (taken, b.port, len(handed)))
            return 0 if ok else 1
        finally:
            b.stop()
            held.close()


if __name__ == "__main__":
    sys.exit(main())
