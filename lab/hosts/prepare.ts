/**
 * The lab's cached pieces, made by setup (scripts/setup.sh runs this as root:
 * `node --import tsx lab/hosts/prepare.ts`) so that lab tests download
 * nothing: the Debian root every host boots from, the docker layer above it,
 * and the .deb sets tests install on hosts. Each piece is made once and
 * checked against its marker afterwards; with everything present this only
 * reads three small files.
 */
import { ensureDockerLayer } from "./docker.ts";
import { DEB_SETS, ensureDebs } from "./debs.ts";
import { ensureRootfs } from "./rootfs.ts";

const say = (msg: string) => process.stderr.write(`[meshfleet setup] lab: ${msg}\n`);
const secs = (ms = 0) => `${(ms / 1000).toFixed(1)} s`;

export async function prepareLab(log: (msg: string) => void = say): Promise<void> {
  const root = await ensureRootfs((m) => log(`lab root: ${m}`));
  log(root.made ? `lab root made in ${secs(root.debootstrapMs)} (${root.path})` : "lab root cached");
  const layer = await ensureDockerLayer((m) => log(`docker layer: ${m}`), { allowFetch: true });
  log(layer.made ? `docker layer made in ${secs(layer.installMs)} (${layer.path})` : "docker layer cached");
  for (const set of DEB_SETS) {
    const d = await ensureDebs(set, { log: (m) => log(`${set.name}: ${m}`), allowFetch: true });
    log(d.made ? `${set.name}: ${d.files.length} .debs fetched in ${secs(d.fetchMs)}` : `${set.name}: ${d.files.length} .debs cached`);
  }
}

if (process.argv[1] && import.meta.filename === process.argv[1]) {
  if (process.getuid?.() !== 0) {
    say("the lab's cached pieces need root (debootstrap, mount, chroot): run setup as root");
    process.exit(1);
  }
  try {
    await prepareLab();
  } catch (e) {
    say(`error: ${(e as Error).message}`);
    process.exit(1);
  }
}
