/**
 * OHIF Viewer 3.13 configuration for medimg in the cluster (ConfigMap ohif-viewer-app-config,
 * mounted at /usr/share/nginx/html/app-config.js by components/ohif-viewer).
 *
 * The same settings as docs/viewer/app-config.js (a test compares the data source's roots):
 * one DICOMweb data source on the viewer's own origin, whose nginx forwards /dicom-web/ to
 * the PACS's DICOMweb root (pacs.yaml's dicomwebUrl). Same origin means no CORS headers are
 * needed on the PACS, and no PACS address is written here.
 *
 * Extensions and modes are not listed: the prebuilt @ohif/app bundle already registers
 * them, and its default mode ("Basic Viewer", longitudinal) loads the DICOM SR extension
 * that shows medimg's TID 1500 Measurement Report.
 */
window.config = {
  // The prebuilt bundle is compiled for the root path ("/"): it is served there.
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  // OHIF's question when a report is opened ("continue tracking measurements?") stays on,
  // as in docs/viewer/app-config.js: without it OHIF tries to import the findings into its
  // measurement tools, which cannot work for medimg's whole-slice ROIs.
  // Without WebGL OHIF draws on the CPU: slower, and correct, so no pop-up about it.
  showCPUFallbackMessage: false,
  // Two web workers decode images: enough for MR, and kind to small machines.
  maxNumberOfWebWorkers: 2,
  defaultDataSourceName: 'pacs',
  dataSources: [
    {
      namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
      sourceName: 'pacs',
      configuration: {
        friendlyName: 'PACS (DICOMweb on this origin)',
        name: 'pacs',
        // Paths, not URLs: the browser resolves them against the viewer's own origin.
        qidoRoot: '/dicom-web',
        wadoRoot: '/dicom-web',
        wadoUriRoot: '/wado',
        qidoSupportsIncludeField: false,
        supportsReject: false,
        dicomUploadEnabled: false,
        imageRendering: 'wadors',
        thumbnailRendering: 'wadors',
        enableStudyLazyLoad: true,
        supportsFuzzyMatching: false,
        supportsWildcard: true,
        omitQuotationForMultipartRequest: true,
        bulkDataURI: { enabled: true },
      },
    },
  ],
};
