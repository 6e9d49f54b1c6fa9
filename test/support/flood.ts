// A connect flood for the flood-control test and benchmark: python3 in a lab pod, blocking TCP connects to one
// address over changing ports (distinct flows; 53, which is steered to the DNS proxy, left out) for N seconds; prints a FloodResult.
export interface FloodResult {
  attempts: number;
  /** Attempts that did not fail with EPERM (enforcement failed, or another error). */
  notDenied: number;
  /** errno names of the attempts that were not denied, with counts. */
  otherErrors: Record<string, number>;
  seconds: number;
}

export const FLOOD_SCRIPT = `
import errno, json, socket, sys, time
seconds, ip = float(sys.argv[1]), sys.argv[2]
family = socket.AF_INET6 if ':' in ip else socket.AF_INET
start = time.monotonic()
attempts = not_denied = 0
other = {}
port = 1
while time.monotonic() - start < seconds:
    for _ in range(500):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.connect((ip, port))
            not_denied += 1
            other["connected"] = other.get("connected", 0) + 1
        except OSError as e:
            if e.errno != errno.EPERM:
                not_denied += 1
                name = errno.errorcode.get(e.errno, str(e.errno))
                other[name] = other.get(name, 0) + 1
        s.close()
        attempts += 1
        # Port 53 is the workload's DNS: the kernel steers it to the agent's proxy, which answers.
        port = port % 60000 + 1
        if port == 53:
            port = 54
print(json.dumps({"attempts": attempts, "notDenied": not_denied, "otherErrors": other, "seconds": time.monotonic() - start}))
`;
