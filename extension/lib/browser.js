// One name for the WebExtension API: Firefox's promise-based `browser`, else Chrome's
// `chrome` (whose MV3 APIs return promises too).
export const ext = globalThis.browser ?? globalThis.chrome;

// Firefox has a sidebar instead of chrome.sidePanel.
export function hasSidePanel() {
  return Boolean(ext.sidePanel);
}
