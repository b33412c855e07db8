/** The network a fleet describes, and what a change does to it (meshfleet plan). */
export { networkModel, emptyModel, type NetworkModel, type HostModel, type InputPolicy } from "./model.ts";
export { diffNetwork, type NetworkDiff, type ReachChange, type DiffOptions, type PolicyChange } from "./diff.ts";
export { renderDiffMarkdown, renderDiffJson } from "./render.ts";
