// meshfleet: wait until the control server presents the Noise key this generation expects (at most 60 s).
import { readFileSync } from "node:fs";
const [url, file] = process.argv.slice(2);
let want;
try { want = "mkey:" + readFileSync(file, "utf8").trim(); } catch { process.exit(0); }
const end = Date.now() + 60000;
for (;;) {
  let got = "";
  try {
    const r = await fetch(new URL("/key?v=130", url), { signal: AbortSignal.timeout(3000) });
    if (r.ok) got = String((await r.json()).publicKey ?? "");
  } catch {}
  if (got === "") { console.log("control server not answering its /key: starting tailscaled"); process.exit(0); }
  if (got === want) { console.log("control server presents the expected Noise key"); process.exit(0); }
  if (Date.now() > end) { console.log("control server still presents another Noise key after 60 s: starting tailscaled anyway"); process.exit(0); }
  await new Promise((r) => setTimeout(r, 1000));
}
