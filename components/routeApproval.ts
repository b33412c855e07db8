/**
 * RouteApproval: verify, after a node joined, that headscale approved every
 * route the fleet declares for it. Approval itself is declarative (the
 * policy's autoApprovers, generated from the fleet); headscale 0.25–0.26 had
 * autoApprover bugs (juanfont/headscale#2485, #2547), so it is checked, never
 * assumed. A missing approval fails the deploy naming host and route.
 */
import * as pulumi from "@pulumi/pulumi";
import * as command from "@pulumi/command";
import { checkRouteApproval, EXIT_ROUTES, headscaleCommand, nodesListArgs, type HeadscaleCli, type RouteExpectation } from "./headscaleCli.ts";
import { shq } from "./shell.ts";

export interface RouteApprovalArgs {
  /**
   * What the fleet declares for the node.
   * @example { host: "router", hostname: "router", routes: ["192.168.8.0/24"], exitNode: false }
   */
  expect: RouteExpectation;
  /**
   * Where the headscale CLI runs.
   * @example coordinator.cli
   */
  cli: HeadscaleCli;
  /**
   * SSH connection to the coordinator host.
   * @example hostConnection(fleet.hosts["vps"], sshPrivateKey)
   */
  connection: pulumi.Input<command.types.input.remote.ConnectionArgs>;
  /**
   * Re-check when any of these change (the node's generation).
   * @default []
   * @example [agent.generation]
   */
  triggers?: pulumi.Input<unknown>[];
  /**
   * Seconds to wait for the node to register and its routes to show up as approved.
   * @default 60
   * @example 180
   */
  timeoutSeconds?: number;
}

/**
 * The command run on the coordinator: list nodes until the node is there and
 * each wanted route shows up at least twice (announced and approved), or the
 * time is up; then print the list for the pure check to judge.
 */
export function routeApprovalScript(cli: HeadscaleCli, want: RouteExpectation, timeoutSeconds: number): string {
  const list = headscaleCommand(cli, nodesListArgs());
  const routes = [...want.routes, ...(want.exitNode ? EXIT_ROUTES : [])];
  const tries = Math.max(1, Math.ceil(timeoutSeconds / 2));
  const conds = [`printf '%s' "$out" | grep -qF -- ${shq(`"${want.hostname}"`)}`, ...routes.map((r) => `[ "$(printf '%s\\n' "$out" | grep -cF -- ${shq(`"${r}"`)})" -ge 2 ]`)];
  return [
    `i=0`,
    `while :; do`,
    `  out=$(${list})`,
    `  if ${conds.join(" && ")}; then break; fi`,
    `  i=$((i + 1)); [ "$i" -ge ${tries} ] && break`,
    `  sleep 2`,
    `done`,
    // Nodes joined with a legacy (pre-0.27) key list it in full under pre_auth_key: never let it into state.
    `printf '%s\\n' "$out" | sed 's/\\("key": *"\\)[^"]*"/\\1(masked by meshfleet)"/'`,
  ].join("\n");
}

/**
 * The verdict step: succeeds quietly, or fails printing one line per problem.
 * A failing resource is how a deploy fails cleanly in Pulumi (a thrown
 * error in an output surfaces as an unhandled exception, and log.error does
 * not fail the update, pulumi/pulumi#6090).
 */
export function routeVerdictScript(problems: string[]): string {
  if (problems.length === 0) return "echo 'meshfleet: every declared route is approved'";
  return [...problems.map((p) => `echo ${shq(`meshfleet: ${p}`)} >&2`), "exit 1"].join("\n");
}

export class RouteApproval extends pulumi.ComponentResource {
  /** The declared routes headscale approved (the verdict step fails the deploy when one is missing). */
  public readonly approvedRoutes: pulumi.Output<string[]>;
  /** Problems found (empty when all is approved). */
  public readonly problems: pulumi.Output<string[]>;
  public readonly command: command.remote.Command;
  public readonly verdict: command.remote.Command;

  constructor(name: string, args: RouteApprovalArgs, opts?: pulumi.ComponentResourceOptions) {
    super("meshfleet:index:RouteApproval", name, {}, opts);
    const want = args.expect;
    this.command = new command.remote.Command(
      `${name}-check`,
      {
        connection: args.connection,
        create: routeApprovalScript(args.cli, want, args.timeoutSeconds ?? 60),
        triggers: [JSON.stringify(want), ...(args.triggers ?? [])],
        // The node list is long and holds nothing secret, but it is noise in the update log.
        logging: "stderr",
      },
      { parent: this },
    );
    this.problems = this.command.stdout.apply((out) => checkRouteApproval(out, want));
    this.verdict = new command.remote.Command(
      `${name}-verdict`,
      { connection: args.connection, create: this.problems.apply(routeVerdictScript), triggers: [this.command.stdout] },
      { parent: this },
    );
    const wanted = [...want.routes, ...(want.exitNode ? [...EXIT_ROUTES] : [])];
    this.approvedRoutes = pulumi.all([this.problems, this.verdict.stdout]).apply(([problems]) => wanted.filter((r) => !problems.some((p) => p.includes(` ${r} `))));
    this.registerOutputs({ approvedRoutes: this.approvedRoutes, problems: this.problems });
  }
}
