// Layering rules (run by `pnpm lint`): packages never import apps, nothing imports in a cycle,
// and the repository package knows nothing of the database, HTTP or gRPC.
/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: "packages-not-to-apps",
      comment: "packages/* are libraries; apps/* depend on them, never the other way round.",
      severity: "error",
      from: { path: "^packages/" },
      to: { path: "^apps/" },
    },
    {
      name: "no-circular",
      comment: "Import cycles make load order fragile and layers meaningless.",
      severity: "error",
      from: {},
      to: { circular: true },
    },
    {
      name: "repository-is-storage-only",
      comment: "The repository format library must not know about Prisma, Fastify or gRPC.",
      severity: "error",
      from: { path: "^packages/repository/" },
      to: {
        path: "(^packages/(catalog|protocol)/|node_modules/(@prisma|prisma|fastify|@fastify|@grpc|bullmq|ioredis))",
      },
    },
    {
      name: "apps-not-into-each-other",
      comment: "Apps share code through packages/*, not by importing each other.",
      severity: "error",
      from: { path: "^apps/([^/]+)/" },
      to: { path: "^apps/", pathNot: "^apps/$1/" },
    },
  ],
  options: {
    doNotFollow: { path: "node_modules" },
    exclude: { path: "(node_modules|/dist/|/generated/)" },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: "tsconfig.base.json" },
    enhancedResolveOptions: {
      exportsFields: ["exports"],
      conditionNames: ["source", "import", "node", "default"],
    },
    combinedDependencies: true,
  },
};
