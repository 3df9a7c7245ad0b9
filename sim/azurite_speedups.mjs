// Preloaded into Azurite's node process by sim/azurite.py (node --import). Emulator speed only:
// what Azurite accepts, rejects or returns is unchanged. Azure Table Storage has neither curve.
//
// Azurite keeps a table in one LokiJS collection with binary indices on PartitionKey and RowKey.
import { createRequire } from "node:module";

const require = createRequire(process.argv[1]);
const Collection = require("lokijs").Collection.prototype;

// 1. Point lookups. Azurite looks an entity up with findOne({PartitionKey, RowKey}) on every
// insert, upsert, update and delete. LokiJS uses an index for the first filter only, so each
// lookup scans the whole partition: writing n rows into one partition costs O(n^2) (a first
// night's 100,000-row night-index partition took tens of minutes). Putting RowKey first finds the
// same (unique) entity through the RowKey index.
const findOne = Collection.findOne;
Collection.findOne = function (query) {
  if (query && this.binaryIndices && this.binaryIndices.RowKey) {
    const keys = Object.keys(query);
    if (keys.length === 2 && keys[0] === "PartitionKey" && keys[1] === "RowKey" &&
        typeof query.PartitionKey === "string" && typeof query.RowKey === "string") {
      return findOne.call(this, { RowKey: query.RowKey, PartitionKey: query.PartitionKey });
    }
  }
  return findOne.call(this, query);
};

// 2. Replacing an entity. Azurite's updateTableEntity (Update Entity, and Insert Or Replace of an
// existing entity) removes the old document and inserts the new one. LokiJS's remove walks every
// position of both binary indices to shift them down, so each replace costs O(rows in the table):
// replacing 10,000 rows of a 200,000-row table took about 10 s, against 2.5 s for inserting them
// into an empty one. The key is the same, so the new document can take the old one's place in the
// collection: both indices stay sorted as they are. The old document object is left untouched, as
// the batch rollback (which restores it from the list below) expects. SIM_AZURITE_REPLACE=remove
// keeps Azurite's own way (the tests compare the two).
const storeModule = require("./persistence/LokiTableMetadataStore.js");
const Store = storeModule.default.prototype;
const errors = require("./errors/StorageErrorFactory.js").default;
const replaceByRemoveAndInsert = Store.updateTableEntity;
const inPlace = process.env.SIM_AZURITE_REPLACE !== "remove";
Store.updateTableEntity = async function (context, table, account, entity, ifMatch, batchId) {
  const coll = this.getEntityCollection(account, table, context);
  if (!inPlace || !coll.adaptiveBinaryIndices || coll.DynamicViews.length > 0 || coll.uniqueNames.length > 0 ||
      coll.cloneObjects || !coll.disableFreeze) {
    return replaceByRemoveAndInsert.call(this, context, table, account, entity, ifMatch, batchId);
  }
  const doc = coll.findOne({ PartitionKey: entity.PartitionKey, RowKey: entity.RowKey });
  if (!doc) {
    throw errors.getEntityNotFound(context);
  }
  if (batchId !== "") {
    this.transactionRollbackTheseEntities.push(doc);
  }
  const encodedEtag = this.encodeIfMatch(doc.eTag);
  const encodedIfMatch = ifMatch !== undefined ? this.encodeIfMatch(ifMatch) : undefined;
  if (encodedIfMatch === undefined || encodedIfMatch === "*" || encodedEtag === encodedIfMatch) {
    const [, position] = coll.get(doc.$loki, true);
    entity.properties.Timestamp = entity.lastModifiedTime;
    entity.properties["Timestamp@odata.type"] = "Edm.DateTime";
    entity.$loki = doc.$loki;
    entity.meta = { revision: 0, created: Date.now(), version: 0 };
    coll.data[position] = entity;
    coll.dirty = true;
    return entity;
  }
  throw errors.getPreconditionFailed(context);
};
