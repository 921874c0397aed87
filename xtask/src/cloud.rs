//! `cargo xtask cloud`: the S3, Azure and GCS tests against moto_server, Azurite and the GCS
//! XML API emulator in xtask/cloud/, all on 127.0.0.1.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::*;

/// `cargo xtask cloud`: starts moto_server (S3), Azurite (Azure Blob Storage) and our GCS XML
/// API emulator on free ports of 127.0.0.1, creates a bucket and a container, runs the tests
/// whose name contains `s3`, `azure` or `gcs` with those features on and `BRISK_TEST_S3_URL` /
/// `BRISK_TEST_AZURE_URL` / `BRISK_TEST_GCS_URL` set, and checks that the tests really wrote
/// to every server; then runs `examples/dynamic_source`
/// with its poller watching an S3 prefix of moto_server.
pub(crate) fn cloud() -> Result<()> {
    let python = venv("cloud", "xtask/cloud/requirements.txt")?;
    let bin = python
        .parent()
        .context("the venv's bin directory")?
        .to_path_buf();
    // Azurite from npm, pinned by xtask/cloud/package.json (installed once).
    let az_dir = PathBuf::from("target/cloud/azurite");
    npm_install("xtask/cloud/package.json", &az_dir)?;
    let (s3_port, az_port, gcs_port) = (free_port()?, free_port()?, free_port()?);
    let s3_endpoint = format!("http://127.0.0.1:{s3_port}");
    let az_endpoint = format!("http://127.0.0.1:{az_port}/devstoreaccount1");
    let moto_log = std::fs::File::create("target/cloud/moto.log")?;
    let _moto = KillOnDrop(
        Command::new(bin.join("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &s3_port.to_string()])
            .stdout(moto_log.try_clone()?)
            .stderr(moto_log)
            .spawn()
            .context("starting moto_server")?,
    );
    let az_data = PathBuf::from("target/cloud/azurite-data");
    remove_dir_if_present(&az_data)?;
    let az_log = std::fs::File::create("target/cloud/azurite.log")?;
    let _azurite = KillOnDrop(
        Command::new(az_dir.join("node_modules/.bin/azurite-blob"))
            .args([
                "--blobHost",
                "127.0.0.1",
                "--blobPort",
                &az_port.to_string(),
            ])
            .arg("--location")
            .arg(&az_data)
            .args(["--skipApiVersionCheck", "--loose"])
            .stdout(az_log.try_clone()?)
            .stderr(az_log)
            .spawn()
            .context("starting Azurite (needs Node.js)")?,
    );
    // GCS: our XML API emulator (see its docstring for why not a third-party one).
    let gcs_log = std::fs::File::create("target/cloud/gcs.log")?;
    let _gcs = KillOnDrop(
        Command::new(&python)
            .arg("xtask/cloud/gcs_xml_emulator.py")
            .args(["--port", &gcs_port.to_string(), "--bucket", "brisk-test"])
            .stdout(gcs_log.try_clone()?)
            .stderr(gcs_log)
            .spawn()
            .context("starting the GCS emulator")?,
    );
    wait_for_port(s3_port, "moto_server", "target/cloud/moto.log")?;
    wait_for_port(az_port, "Azurite", "target/cloud/azurite.log")?;
    wait_for_port(gcs_port, "the GCS emulator", "target/cloud/gcs.log")?;
    let conn = format!(
        "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey={AZURITE_KEY};\
         BlobEndpoint={az_endpoint};"
    );
    let setup = format!(
        "import boto3\n\
         from azure.storage.blob import BlobServiceClient\n\
         boto3.client('s3', endpoint_url='{s3_endpoint}', region_name='us-east-1', \
         aws_access_key_id='testing', aws_secret_access_key='testing').create_bucket(Bucket='brisk-test')\n\
         BlobServiceClient.from_connection_string('{conn}').create_container('brisk-test')\n"
    );
    run_ok(Command::new(&python).args(["-c", &setup]))?;
    let mut tests = cargo(&[
        "nextest",
        "run",
        "--package",
        "brisk-checkpoint",
        "--package",
        "brisk-zarr",
        "--features",
        "brisk-checkpoint/s3,brisk-checkpoint/azure,brisk-checkpoint/gcs,brisk-zarr/s3,brisk-zarr/azure,brisk-zarr/gcs",
        "--no-fail-fast",
        // The cloud tests are ignored without the emulators; here they must run (nextest
        // fails when the filter selects none).
        "--run-ignored",
        "only",
        "-E",
        "test(/s3|azure|gcs/)",
    ]);
    tests
        .env("BRISK_TEST_S3_URL", "s3://brisk-test")
        .env("AWS_ENDPOINT_URL", &s3_endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("BRISK_TEST_AZURE_URL", "az://brisk-test")
        .env("AZURE_STORAGE_USE_EMULATOR", "true")
        .env(
            "AZURITE_BLOB_STORAGE_URL",
            format!("http://127.0.0.1:{az_port}"),
        )
        .env("BRISK_TEST_GCS_URL", "gs://brisk-test")
        // No OAuth against the emulator; object_store reads the base URL from the key.
        .env(
            "GOOGLE_SERVICE_ACCOUNT_KEY",
            format!(
                r#"{{"disable_oauth":true,"client_email":"","private_key":"","private_key_id":"","gcs_base_url":"http://127.0.0.1:{gcs_port}"}}"#
            ),
        );
    run_ok(&mut tests)?;
    // The dynamic-source example with its poller watching an S3 prefix.
    let mut example = crate::example("dynamic_source", &["s3"]);
    example.args([
        "--quick",
        "--store",
        "s3://brisk-test/dynamic",
        "--checkpoints",
        "target/cloud/dynamic-checkpoints",
    ]);
    remove_dir_if_present(Path::new("target/cloud/dynamic-checkpoints"))?;
    example
        .env("AWS_ENDPOINT_URL", &s3_endpoint)
        .env("AWS_ALLOW_HTTP", "true")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing");
    run_ok(&mut example)?;
    // The tests skip themselves without the variables; make sure they really wrote.
    let log = std::fs::read_to_string("target/cloud/moto.log")?;
    for who in [
        "/brisk-test/conformance/",
        "/brisk-test/zarr/",
        "/brisk-test/dynamic/",
    ] {
        if !log.contains(who) {
            bail!("no request under {who} reached moto_server: the S3 tests did not run");
        }
    }
    let check = format!(
        "from azure.storage.blob import BlobServiceClient\n\
         names = [b.name for b in BlobServiceClient.from_connection_string('{conn}')\
         .get_container_client('brisk-test').list_blobs()]\n\
         assert any(n.startswith('conformance/') for n in names), names\n\
         assert any(n.startswith('zarr/') for n in names), names\n\
         print(f'azurite holds {{len(names)}} blobs written by the tests')\n"
    );
    run_ok(Command::new(&python).args(["-c", &check]))?;
    let log = std::fs::read_to_string("target/cloud/gcs.log")?;
    for who in ["/brisk-test/conformance/", "/brisk-test/zarr/"] {
        if !log.contains(who) {
            bail!("no request under {who} reached the GCS emulator: the GCS tests did not run");
        }
    }
    Ok(())
}
