import { defineConfig, type Plugin } from 'vite';

// The dashboard (app.tsx) is a chunk of its own that the first script
// (main.ts) imports once it has sent the first requests. The page names it as
// a module preload, so that the browser fetches it beside the first script
// instead of after it (and the budget check counts it: the first page needs it).
function preloadDynamicEntries(): Plugin {
  return {
    name: 'nucleon-preload-dynamic-entries',
    apply: 'build',
    transformIndexHtml: {
      order: 'post',
      handler(_html, ctx) {
        return Object.values(ctx.bundle ?? {})
          .filter((c) => c.type === 'chunk' && c.isDynamicEntry)
          .map((c) => ({ tag: 'link', attrs: { rel: 'modulepreload', crossorigin: true, href: `/${c.fileName}` }, injectTo: 'head' as const }));
      },
    },
  };
}

// Built into NUCLEON_WEB_OUT (the build folder) when CMake builds it, else dist/.
export default defineConfig({
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  plugins: [preloadDynamicEntries()],
  build: {
    outDir: process.env.NUCLEON_WEB_OUT ?? 'dist',
    emptyOutDir: true,
    target: 'es2020',
    assetsInlineLimit: 0,
    reportCompressedSize: false,
  },
});
