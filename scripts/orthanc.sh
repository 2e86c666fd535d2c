#!/usr/bin/env bash
# Start a local Orthanc archive for trying the node (make orthanc).
#   HTTP/DICOMweb on 127.0.0.1:${ORTHANC_HTTP_PORT:-8042}, DICOM AE ORTHANC on ${ORTHANC_DICOM_PORT:-4242},
#   the node registered as modality "sgc" (SGC_NODE@127.0.0.1:${SGC_PORT:-11112}),
#   data in ${ORTHANC_DIR:-data/orthanc}. Point the node at it with
#   SGC_ARCHIVE=ORTHANC@127.0.0.1:4242, push a study to the node with
#   curl -X POST http://127.0.0.1:8042/modalities/sgc/store -d <orthanc study id>.
set -euo pipefail
dir="${ORTHANC_DIR:-data/orthanc}"
http="${ORTHANC_HTTP_PORT:-8042}"
dicom="${ORTHANC_DICOM_PORT:-4242}"
node_aet="${SGC_AE_TITLE:-SGC_NODE}"
node_port="${SGC_PORT:-11112}"
command -v Orthanc >/dev/null || { echo "Orthanc is not installed: make deps" >&2; exit 1; }
mkdir -p "$dir"
cat > "$dir/config.json" <<JSON
{
  "Name": "sgc-local-archive",
  "StorageDirectory": "$(realpath "$dir")/storage",
  "IndexDirectory": "$(realpath "$dir")/index",
  "HttpPort": $http,
  "DicomPort": $dicom,
  "DicomAet": "ORTHANC",
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomAlwaysAllowStore": true,
  "DicomModalities": { "sgc": ["$node_aet", "127.0.0.1", $node_port] },
  "Plugins": ["/usr/share/orthanc/plugins"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/" },
  "StableAge": 2
}
JSON
echo "Orthanc: http://127.0.0.1:$http (DICOM ORTHANC@127.0.0.1:$dicom), node as modality 'sgc'"
exec Orthanc "$dir/config.json"
