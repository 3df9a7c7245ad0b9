// Preloaded into Azurite's node process by sim/azurite.py (node --import). Emulator speed only:
// what Azurite accepts, rejects or returns is unchanged. Azure Table Storage has neither curve.
//
// Azurite keeps a table in one LokiJS collection with binary indices on PartitionKey and RowKey.
import { createRequire } from "node:module";

const require = createRequire(process.argv[1]);
// SIM_AZURITE_SPEEDUPS=off installs nothing: Azurite as shipped (the tests compare the two).
if (process.env.SIM_AZURITE_SPEEDUPS !== "off") {
  install();
}

function install() {
  const Collection = require("lokijs").Collection.prototype;

  // 1. Point lookups and the cost of every write. Azurite looks an entity up with
  // findOne({PartitionKey, RowKey}) on every insert, upsert, update and delete, and creates each
  // table's collection with binary indices on PartitionKey and RowKey. LokiJS uses an index for the
  // first filter only, so each lookup scans the whole partition (writing n rows into one partition
  // costs O(n^2): a first night's 100,000-row night-index partition took tens of minutes), and it
  // keeps each binary index as a sorted array that every insert and remove shifts: O(rows in the
  // table) per write (inserting 5,000 rows took 2.4 s into a 200,000-row table, 0.8 s into an empty
  // one). So a table's collection here has no binary indices: a map from the key to the stored
  // document answers findOne({PartitionKey, RowKey}), and LokiJS's add, remove and update keep it
  // true. Nothing else in Azurite's table store reads those indices: queries filter with a function
  // and sort the result themselves.
  const points = Symbol("point lookups");
  const keyOf = (doc) => doc.PartitionKey + "\u0000" + doc.RowKey;
  const samePoint = (query) => {
    if (!query || typeof query.PartitionKey !== "string" || typeof query.RowKey !== "string") return false;
    const keys = Object.keys(query);
    return keys.length === 2 && keys.includes("PartitionKey") && keys.includes("RowKey");
  };

  const findOne = Collection.findOne;
  Collection.findOne = function (query) {
    const map = this[points];
    if (map && samePoint(query)) {
      return map.get(keyOf(query)) ?? null;
    }
    return findOne.call(this, query);
  };

  const add = Collection.add;
  Collection.add = function (obj) {
    const stored = add.call(this, obj);
    const map = this[points];
    if (map && stored) {
      map.set(keyOf(stored), stored);
    }
    return stored;
  };

  // The stored document a remove or update names (LokiJS also takes ids and arrays: not here).
  const storedOf = (coll, doc) =>
    coll[points] && doc && typeof doc === "object" && !Array.isArray(doc) ? coll.get(doc.$loki) : null;

  const remove = Collection.remove;
  Collection.remove = function (doc) {
    const map = this[points];
    const stored = storedOf(this, doc);
    const removed = remove.apply(this, arguments);
    if (stored && map.get(keyOf(stored)) === stored) {
      map.delete(keyOf(stored));
    }
    return removed;
  };

  const update = Collection.update;
  Collection.update = function (doc) {
    const map = this[points];
    const before = storedOf(this, doc);
    const result = update.apply(this, arguments);
    if (before) {
      const after = this.get(doc.$loki);
      if (map.get(keyOf(before)) === before) map.delete(keyOf(before));
      if (after) map.set(keyOf(after), after);
    }
    return result;
  };

  // 2. Replacing an entity. Azurite's updateTableEntity (Update Entity, and Insert Or Replace of an
  // existing entity) removes the old document and inserts the new one, and LokiJS's remove shifts
  // the collection's arrays: replacing 10,000 rows of a 100,000-row table took 3.9 s with the map
  // above (14.8 s without it), and takes 1.3 s in place. The key is the same, so the new document
  // takes the old one's place in the collection and in the map. The old document object is left
  // untouched, as the batch rollback (which restores it from the list below) expects.
  const storeModule = require("./persistence/LokiTableMetadataStore.js");
  const Store = storeModule.default.prototype;
  const errors = require("./errors/StorageErrorFactory.js").default;
  const createCollectionForTable = Store.createCollectionForTable;
  Store.createCollectionForTable = function (tableModel) {
    createCollectionForTable.call(this, tableModel);
    const coll = this.db.getCollection(this.getTableCollectionName(tableModel.account, tableModel.table));
    if (coll && coll.data.length === 0) {
      coll.binaryIndices = {};
      coll[points] = new Map();
    }
  };

  const replaceByRemoveAndInsert = Store.updateTableEntity;
  Store.updateTableEntity = async function (context, table, account, entity, ifMatch, batchId) {
    const coll = this.getEntityCollection(account, table, context);
    if (!coll[points] || coll.DynamicViews.length > 0 || coll.uniqueNames.length > 0 || coll.cloneObjects ||
        !coll.disableFreeze) {
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
      coll[points].set(keyOf(entity), entity);
      coll.dirty = true;
      return entity;
    }
    throw errors.getPreconditionFailed(context);
  };
}
