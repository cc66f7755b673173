import react from "@vitejs/plugin-react";
import { defaultClientConditions, defineConfig } from "vite";

// The console is served by bulwark-server from dist/; in development `pnpm dev` proxies the API.
// Workspace packages (@bulwark/api) are bundled from their TypeScript sources ("source" condition).
export default defineConfig({
  plugins: [react()],
  resolve: { conditions: ["source", ...defaultClientConditions] },
  build: { outDir: "dist", emptyOutDir: true },
  server: { proxy: { "/healthz": "http://127.0.0.1:8080", "/api": "http://127.0.0.1:8080" } },
});
