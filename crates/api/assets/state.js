// What the page keeps since it loaded, and the node status every view reads.

import { api } from "./api.js";

// State kept since the page loaded.
export const state = {
  status: null,
  activity: [], // { time, text, href }
  reorgs: [], // { time, depth, tipHeight, tipHash, forkHeight, disconnected: [], connected: [] }
  pendingDisconnected: [],
  pendingConnected: [],
  freshBlocks: new Set(),
};

const networkBadge = document.getElementById("network");

export async function refreshStatus() {
  const status = await api("/status");
  state.status = status;
  networkBadge.textContent = status.network;
  return status;
}
