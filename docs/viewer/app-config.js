/**
 * OHIF Viewer 3.13 configuration for medimg: one DICOMweb data source on the viewer's own
 * origin.
 *
 * The viewer is served at the root of a web server that also forwards /dicom-web/ to the
 * PACS (Orthanc's DICOMweb plugin here; any DICOMweb server works). Same origin means no
 * CORS headers are needed on the PACS, and no PACS address is written here: the same file
 * serves the test (tests/browser/test_ohif.py) and a laptop, and the cluster's ConfigMap
 * (k8s/components/ohif-viewer/app-config.js) holds the same settings. See
 * docs/viewer/README.md.
 *
 * OHIF's question when a report is opened ("continue tracking measurements?") is left on,
 * OHIF's default (no disableConfirmationPrompts): without it OHIF tries at once to import
 * the findings into its measurement tools, which cannot work for medimg's TID 1410 ROIs.
 *
 * Extensions and modes are not listed: the prebuilt @ohif/app bundle already registers
 * them, and its default mode ("Basic Viewer", longitudinal) loads the DICOM SR extension
 * that shows medimg's TID 1500 Measurement Report.
 */
window.config = {
  // The prebuilt bundle is compiled for the root path ("/"): serve it there.
  routerBasename: '/',
  extensions: [],
  modes: [],
  showStudyList: true,
  // Without WebGL (headless browsers, some thin clients) OHIF draws on the CPU: slower,
  // and correct, so no pop-up about it over the images.
  showCPUFallbackMessage: false,
  // Two web workers decode images: enough for MR series, and kind to small machines.
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
