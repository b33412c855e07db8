/** Host-side enforcement: the policy's rules for one host, as nft sets of fleet hosts. */
import { describe, expect, it } from "vitest";
import { evaluateFleet } from "../../core/index.ts";
import { REGISTRY } from "../../modules/index.ts";
import { renderNftables } from "../../modules/firewall.ts";
import { writeFleet } from "./fleet-fixture.ts";

describe("firewall.trustTailnet: false", () => {
  it("lab: lxc-tailscale admits alice's devices on 80/443 only and the tagged hosts on everything", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    const fw = r.fleet!.hosts["lxc-tailscale"].firewall;
    const byComment = Object.fromEntries(fw.tailnet.map((t) => [t.comment, t]));
    expect(byComment["acls[0] src=alice@"]).toMatchObject({ ports: [80, 443] });
    expect(fw.setMembers[byComment["acls[0] src=alice@"].fromSet]).toEqual(["laptop"]);
    expect(byComment["acls[1] src=tag:router,tag:server"]).toMatchObject({ ports: "any" });
    expect(fw.setMembers[byComment["acls[1] src=tag:router,tag:server"].fromSet]).toEqual(["lxc-tailscale", "vps"]);
    // No placeholder tailnet addresses are ever rendered: the agent fills in live ones.
    expect(renderNftables(r.fleet!.hosts["lxc-tailscale"])).not.toMatch(/100\.\d+\.\d+\.\d+/);
  });

  it("hosts that trust the tailnet accept tailscale0 whole", async () => {
    const r = await evaluateFleet(REGISTRY, "hosts/lab", "lab");
    expect(r.fleet!.hosts.laptop.firewall.tailnet).toEqual([]);
    expect(renderNftables(r.fleet!.hosts.laptop)).toContain('iifname "tailscale0" accept');
  });

  it("a LAN CIDR source stays a literal element", async () => {
    const { dir, cleanup } = writeFleet({
      "fleet.yaml": `coordinator:\n  host: vps\n  serverUrl: https://hs.example.com\nusers: [alice]\nadmins: [alice]\npolicy:\n  tagOwners:\n    tag:router: [alice@]\n  acls:\n    - action: accept\n      src: [alice@]\n      dst: ["*:*"]\n    - action: accept\n      src: [192.168.50.0/24]\n      dst: ["tag:router:9100"]\n`,
      "router.yaml": `imports: [subnet-router]\naddress: 192.168.8.205\nlan: [192.168.8.0/24]\nsubnet-router:\n  routes: [192.168.8.0/24]\ntailscale:\n  tags: [tag:router]\nfirewall:\n  trustTailnet: false\n`,
    });
    try {
      const r = await evaluateFleet(REGISTRY, dir, "fx");
      expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([]);
      const fw = r.fleet!.hosts.router.firewall;
      const lan = fw.tailnet.find((t) => t.comment.startsWith("acls[1]"))!;
      expect(fw.sets[lan.fromSet]).toEqual(["192.168.50.0/24"]);
      expect(lan.ports).toEqual([9100]);
    } finally {
      cleanup();
    }
  });
});
