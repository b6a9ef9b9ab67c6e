// Builds the UI into dist/, which forja-server embeds at compile time.
// Everything is bundled: no CDN, no external font, no inline script (the
// node serves it under a strict Content-Security-Policy).
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

export default defineConfig({
  plugins: [react()],
  base: "/",
  build: {
    outDir: "dist",
    assetsDir: "assets",
    emptyOutDir: true,
    // No inline data: URLs for assets (CSP); no sourcemaps in the binary.
    assetsInlineLimit: 0,
    sourcemap: false,
  },
  server: {
    proxy: { "/v1": "http://127.0.0.1:8000" },
  },
  test: {
    environment: "node",
    include: ["src/**/*.test.ts"],
  },
});
