/** SSH connections pin host keys when the fleet or a known_hosts file gives one. */
import { describe, expect, it } from "vitest";
import { connectionFor, knownHostKey, parseKnownHosts } from "../../components/shell.ts";

const KNOWN = [
  "# lab",
  "172.31.240.10 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIvps",
  "[172.31.240.77]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlap",
  "|1|hashed= ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIhash",
  "a.example,b.example ssh-rsa AAAAB3NzaC1yc2E",
].join("\n");

describe("known hosts", () => {
  const known = parseKnownHosts(KNOWN);
  it.each([
    ["172.31.240.10", 22, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIvps"],
    ["172.31.240.77", 2222, "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIlap"],
    ["172.31.240.77", 22, undefined],
    ["b.example", 22, "ssh-rsa AAAAB3NzaC1yc2E"],
    ["203.0.113.10", 22, undefined],
  ])("%s:%i", (address, port, want) => expect(knownHostKey(known, address, port)).toBe(want));

  it("a known key goes into the connection; none leaves it out", () => {
    expect(connectionFor({ address: "h", user: "root", port: 22, hostKey: "ssh-ed25519 AAAA" }).hostKey).toBe("ssh-ed25519 AAAA");
    expect("hostKey" in connectionFor({ address: "h", user: "root", port: 22 })).toBe(false);
  });
});
