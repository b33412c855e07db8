import { describe, expect, it } from "vitest";
import { parsePingLog, pingsBetween, sendTimes } from "../../lab/e2e/ping.ts";

// iputils' `ping -n -D -O -i 0.5 -c 8` through a blip: seq 4 unanswered, seq 5 an ICMP error, seq 6 a send error.
const OUT = `PING 192.168.8.10 (192.168.8.10) 56(84) bytes of data.
[1000.000000] 64 bytes from 192.168.8.10: icmp_seq=1 ttl=63 time=1.10 ms
[1000.500000] 64 bytes from 192.168.8.10: icmp_seq=2 ttl=63 time=1.20 ms
[1001.000000] 64 bytes from 192.168.8.10: icmp_seq=3 ttl=63 time=1.30 ms
[1002.000000] no answer yet for icmp_seq=4
[1002.000000] From 100.64.0.3 icmp_seq=5 Destination Host Unreachable
ping: sendmsg: Network is unreachable
[1003.100000] 64 bytes from 192.168.8.10: icmp_seq=7 ttl=63 time=1.00 ms
[1003.600000] 64 bytes from 192.168.8.10: icmp_seq=8 ttl=63 time=0.90 ms

--- 192.168.8.10 ping statistics ---
8 packets transmitted, 5 received, +1 errors, 37.5% packet loss, time 3600ms
`;

describe("the lab's ping log", () => {
  it("reads each reply's seq and time and the summary's count", () => {
    const log = parsePingLog(OUT);
    expect(log.sent).toBe(8);
    expect([...log.replies.keys()]).toEqual([1, 2, 3, 7, 8]);
    expect(log.replies.get(7)).toBe(1_003_099);
  });

  it("dates a ping by when it was sent: a late reply does not move the lost pings before it, and a DUP! is no second answer", () => {
    const late = `[1000.000000] 64 bytes from 192.168.8.10: icmp_seq=1 ttl=63 time=1.00 ms
[1001.000000] no answer yet for icmp_seq=2
[1002.800000] 64 bytes from 192.168.8.10: icmp_seq=3 ttl=63 time=1800 ms
[1003.000000] 64 bytes from 192.168.8.10: icmp_seq=3 ttl=63 time=2000 ms (DUP!)
[1001.501000] 64 bytes from 192.168.8.10: icmp_seq=4 ttl=63 time=1.00 ms

4 packets transmitted, 3 received, +1 duplicates, 25% packet loss, time 1500ms
`;
    const log = parsePingLog(late);
    expect(log.sent).toBe(4);
    expect(log.replies.get(3)).toBe(1_001_000);
    const t = sendTimes(log)!;
    expect(t.get(2)).toBe(1_000_500);
    expect(pingsBetween(log, 1_000_400, 1_000_600)).toEqual({ sent: 1, lost: [2] });
  });

  it("places unanswered pings between the replies around them", () => {
    const t = sendTimes(parsePingLog(OUT))!;
    // sent at the reply's stamp less its round trip: seq 3 at 1000.9987, seq 7 at 1003.099
    expect(t.get(4)).toBe(1_001_524);
    expect(t.get(6)).toBe(1_002_574);
    expect(sendTimes(parsePingLog("0 packets transmitted, 0 received"))).toBeNull();
  });

  it("counts the pings sent in a window and names the lost ones", () => {
    const log = parsePingLog(OUT);
    expect(pingsBetween(log, 0, 1_000_750)).toEqual({ sent: 2, lost: [] });
    expect(pingsBetween(log, 1_000_750, 1_003_000)).toEqual({ sent: 4, lost: [4, 5, 6] });
    expect(pingsBetween(log, 1_003_000, 2_000_000)).toEqual({ sent: 2, lost: [] });
    // a summary that counts more than the replies show: the tail is lost
    expect(pingsBetween(parsePingLog(OUT.replace("8 packets", "10 packets")), 1_003_000, 2_000_000)).toEqual({ sent: 4, lost: [9, 10] });
  });
});
